"""Receipt printer tests: receipts content, ESC/POS encoder, status, driver, simulator."""
