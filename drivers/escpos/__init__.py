"""ESC/POS receipt printers: command bytes, CP866 text, status decoding, the serial driver.

Everything except printer.py is pure (bytes in, bytes or dataclasses out) so it is tested
by tables, and the simulator in drivers/sim/printer.py speaks the same bytes back.
"""
