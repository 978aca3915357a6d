"""Figure: the touchscreen — cold start to first frame, resident memory, event-to-screen.

Judged here, as docs/performance-targets.md states them: the first frame within 1.5 × and
the peak resident memory within 1.10 × a bare Kivy window's, both measured in the same run
on the same display (software GL alone costs about 130 MiB, so an absolute limit would
judge the machine's GL stack, not the UI). The real
UI process (`python -m ui --report`) is started against the real core daemon (virtual
devices) on an Xvfb display of its own (Mesa llvmpipe, as on a terminal without a GPU
driver), and timed from just before the spawn to its `READY first_frame` line, printed at
the first buffer flip; then to the first frame that shows the idle screen. VmRSS / VmHWM
come from /proc/PID/status once the UI idles and again after it has walked every customer
screen. The limit measured in the same run is a bare Kivy app: one window, one label.
No growth: VmRSS after one payment through every customer screen (provider, account,
confirm, cash with a bill, receipt, idle) and after ROUNDS of them; the UI-local screens
(check, help, technician) need touches and are held to the same rule by
tests/ui/test_no_growth.py (live widgets and Clock events, not bytes).

Event to screen: the benchmark changes the core's state with an intent (idle ↔ provider)
on its own API connection and waits for the UI's `SHOWN` report of that snapshot `seq`;
the UI stamps the report right after the buffer swap of the frame that shows it. Events
are 150 ms apart, as a person's taps are, so one frame does not queue behind the
previous one (a full 1280×1024 frame costs tens of ms on llvmpipe). Both sides read
CLOCK_MONOTONIC, which is one clock for all processes on Linux. Measured from the moment
the benchmark's own connection received the core's push (the core's event), and from the
intent's send. Bill to screen adds the virtual acceptor's inbox polling: reported only.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_mb,
    fmt_ms,
    fmt_pct,
    median,
    percentile,
    scratch_dir,
    verdict,
)
from bench.daemon import kiosk_daemon, memory_kib, socket_of
from kiosk.api_client import ApiClient
from tests.xvfb import Xvfb, XvfbError

KEY = "ui"
TITLE = "Touchscreen: cold start to first frame, resident memory, event to screen"
FIRST_FRAME_RATIO = 1.5  # × a bare Kivy window's first frame (median of the starts)
RSS_RATIO = 1.10  # peak VmHWM × a bare Kivy window's resident memory
ROUNDS = 50  # rounds through every customer screen for the growth figure
GROWTH_MIB = 1.0  # VmRSS after ROUNDS rounds may exceed that after one by this (allocator noise)
EVENT_TARGET_S = 1.0  # a support-number change must show within a second
SIZE = (1280, 1024)
DPI = 96
TIMEOUT_S = 60.0
PAUSE_S = 0.15  # between measured events

BARE_KIVY = """
import os, time
from kivy.app import App
from kivy.uix.label import Label
from kivy.core.window import Window
def flip(*_):
    Window.unbind(on_flip=flip)
    print("READY first_frame", flush=True)
Window.bind(on_flip=flip)
class Bare(App):
    def load_kv(self, filename=None):  # no source file behind `python -c`
        return None
    def build(self):
        return Label(text="Оплата услуг", font_size=40)
Bare().run()
"""


class UiProc:
    """A UI (or bare Kivy) process whose stdout lines we read as they come."""

    def __init__(self, argv: list[str], display: str, home: Path, stderr: Path) -> None:
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(home),
               "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1", "KIVY_NO_FILELOG": "1",
               "KIVY_DPI": str(DPI),  # the same window for the bare app as for the UI:
               "KCFG_GRAPHICS_WIDTH": str(SIZE[0]), "KCFG_GRAPHICS_HEIGHT": str(SIZE[1])}
        self.stderr = stderr
        with open(stderr, "wb") as err:
            self.t0 = time.perf_counter()
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err)
        self.buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, pred: Callable[[str], bool], timeout: float = TIMEOUT_S) -> tuple[str, float]:
        """The next line satisfying `pred`, and perf_counter() when we read it."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.perf_counter() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                text = raw.decode(errors="replace")
                if pred(text):
                    return text, time.perf_counter()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self.stop()
                raise BenchError(f"no expected line from the UI within {timeout:.0f} s\n"
                                 f"{self._tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise BenchError(f"the UI exited with {self.proc.wait()}\n{self._tail()}")
                self.buf += chunk

    def shown(self, pred: Callable[[dict[str, Any]], bool],
              timeout: float = TIMEOUT_S) -> dict[str, Any]:
        text, _ = self.line(lambda t: t.startswith("SHOWN ") and pred(json.loads(t[6:])),
                            timeout)
        return dict(json.loads(text[6:]))

    def _tail(self) -> str:
        try:
            return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no stderr)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _ui_argv(socket: Path) -> list[str]:
    return [PYTHON, "-m", "ui", "--socket", str(socket), "--report",
            "--size", f"{SIZE[0]}x{SIZE[1]}", "--dpi", str(DPI)]


def _walk_screens(client: ApiClient, ui: UiProc, inbox: Path) -> None:
    """One payment through every customer screen, so every screen has been drawn."""
    for intent, args, screen in (
        ("start", {}, "provider"),
        ("select_provider", {"provider_id": "mts"}, "account"),
        ("submit_account", {"account": "9161234567"}, "confirm"),
        ("confirm_account", {}, "cash"),
    ):
        client.intent(intent, **args)

        def on_screen(s: dict[str, Any], scr: str = screen) -> bool:
            return bool(s["screen"] == scr)

        ui.shown(on_screen)
    with open(inbox, "a", encoding="utf-8") as f:
        f.write("insert 100\n")
    ui.shown(lambda s: s["labels"].get("cash.inserted", "").startswith("100"))
    client.intent("pay")
    ui.shown(lambda s: s["screen"] == "receipt")
    client.intent("done")
    ui.shown(lambda s: s["screen"] == "idle")


def _latency(client: ApiClient, ui: UiProc, rounds: int) -> tuple[list[float], list[float]]:
    from_push, from_send = [], []
    for i in range(rounds):
        time.sleep(PAUSE_S)
        intent, screen = ("start", "provider") if i % 2 == 0 else ("back", "idle")
        before = client.snapshot["seq"] if client.snapshot else -1
        sent = time.monotonic()
        client.intent(intent)

        def pushed_screen(s: dict[str, Any], b: int = before, scr: str = screen) -> bool:
            return bool(s["seq"] > b and s["screen"] == scr)

        snap = client.wait_for(pushed_screen, 10)
        pushed = time.monotonic()  # our connection has the core's push by now
        seq = snap["seq"]

        def drawn(s: dict[str, Any], q: int = seq) -> bool:
            return isinstance(s.get("seq"), int) and s["seq"] >= q

        shown = ui.shown(drawn)
        from_push.append(max(0.0, shown["t"] - pushed))
        from_send.append(shown["t"] - sent)
    return from_push, from_send


def _bill_latency(client: ApiClient, ui: UiProc, inbox: Path, bills: int) -> list[float]:
    client.intent("start")
    client.intent("select_provider", provider_id="mts")
    client.intent("submit_account", account="9161234567")
    client.intent("confirm_account")
    ui.shown(lambda s: s["screen"] == "cash")
    out = []
    for n in range(1, bills + 1):
        time.sleep(PAUSE_S)
        t0 = time.monotonic()
        with open(inbox, "a", encoding="utf-8") as f:
            f.write("insert 100\n")
        want = f"{n * 100:,}".replace(",", "\u00a0") + ",00"

        def counted(s: dict[str, Any], w: str = want) -> bool:
            return bool(s["labels"].get("cash.inserted", "").startswith(w))

        shown = ui.shown(counted)
        out.append(shown["t"] - t0)
    client.intent("pay")
    ui.shown(lambda s: s["screen"] == "receipt")
    client.intent("done")
    return out


def run(ctx: Context) -> BenchResult:
    # 15: the bare window's median moved ±7 % between runs of 7 on a quiet machine
    starts = 3 if ctx.quick else 15
    rounds = 20 if ctx.quick else 100
    bills = 3 if ctx.quick else 10
    result = BenchResult(KEY, TITLE, params=(
        f"{starts} UI starts and {starts} bare-Kivy starts after one uncounted warm-up; "
        f"{rounds} intents; {bills} bills; {SIZE[0]}×{SIZE[1]} at {DPI} DPI on Xvfb + Mesa "
        "llvmpipe"))
    first: list[float] = []
    idle: list[float] = []
    bare_first: list[float] = []
    bare_rss: list[int] = []
    rss_idle: list[int] = []
    peak: list[int] = []
    from_push: list[float] = []
    from_send: list[float] = []
    bill: list[float] = []
    walked: dict[str, int] = {"VmHWM": 0}
    after_one = after_all = 0
    with scratch_dir(ctx, "ui") as root:
        try:
            x = Xvfb(root / "xvfb.log", SIZE).start()
        except XvfbError as exc:
            raise BenchError(str(exc)) from exc
        try:
            with kiosk_daemon(root) as core:
                sock = socket_of(core)
                inbox = root / "data" / "virtual-acceptor.inbox"
                client = ApiClient(sock)
                client.connect()
                client.wait_for(lambda s: s["screen"] == "idle", TIMEOUT_S)
                for i in range(starts + 1):
                    b = UiProc([PYTHON, "-c", BARE_KIVY], x.display, root / "kivy-bare",
                               root / "bare.stderr")
                    _, at = b.line(lambda t: t.startswith("READY"))
                    mem = memory_kib(b.pid)
                    b.stop()
                    ui = UiProc(_ui_argv(sock), x.display, root / "kivy-ui",
                                root / "ui.stderr")
                    _, at_ready = ui.line(lambda t: t.startswith("READY"))
                    ui.shown(lambda s: s["screen"] == "idle")
                    at_idle = time.perf_counter()
                    time.sleep(0.5)  # let it settle: what it holds while waiting
                    idle_mem = memory_kib(ui.pid)
                    last = i == starts
                    if last:  # the last one walks every screen and then measures latency
                        _walk_screens(client, ui, inbox)
                        time.sleep(0.5)  # settled: the dropped screens are given back
                        after_one = memory_kib(ui.pid)["VmRSS"]
                        for _ in range(ROUNDS - 1):
                            _walk_screens(client, ui, inbox)
                        time.sleep(0.5)
                        after_all = memory_kib(ui.pid)["VmRSS"]
                        from_push, from_send = _latency(client, ui, rounds)
                        bill = _bill_latency(client, ui, inbox, bills)
                        walked = memory_kib(ui.pid)
                    ui.stop()
                    if i == 0:
                        continue  # warm-up: byte-code and page caches
                    bare_first.append(at - b.t0)
                    bare_rss.append(mem["VmRSS"])
                    first.append(at_ready - ui.t0)
                    idle.append(at_idle - ui.t0)
                    rss_idle.append(idle_mem["VmRSS"])
                    peak.append(idle_mem["VmHWM"])
                peak.append(walked["VmHWM"])
                client.close()
        finally:
            x.stop()
    med_first = median(first)
    bare_first_s = median(bare_first)
    bare_kib = int(median(bare_rss))
    result.figures += [
        Figure("cold start → first frame", f"{fmt_ms(med_first)} (max {fmt_ms(max(first))})",
               f"bare Kivy window {fmt_ms(bare_first_s)}",
               f"×{med_first / bare_first_s:.2f}", f"≤ ×{FIRST_FRAME_RATIO} (median)",
               verdict(med_first <= FIRST_FRAME_RATIO * bare_first_s)),
        Figure("cold start → idle screen shown", f"{fmt_ms(median(idle))} (max "
               f"{fmt_ms(max(idle))})", f"first frame {fmt_ms(med_first)}", "",
               "none (connected, snapshot drawn)", verdict(None)),
        Figure("resident memory", f"{fmt_mb(int(median(rss_idle)))} at idle (peak "
               f"{fmt_mb(max(peak))} after every screen)",
               f"bare Kivy window {fmt_mb(bare_kib)}",
               f"×{max(peak) / bare_kib:.2f}", f"≤ ×{RSS_RATIO} (peak)",
               verdict(max(peak) <= RSS_RATIO * bare_kib)),
        Figure("memory above a bare Kivy window",
               f"+{fmt_mb(int(median(rss_idle) - median(bare_rss)))} at idle, "
               f"+{fmt_mb(int(max(peak) - median(bare_rss)))} peak",
               f"bare Kivy {fmt_mb(int(median(bare_rss)))} (same window, same GL)", "",
               "none (what the UI itself costs)", verdict(None)),
        Figure(f"resident memory after {ROUNDS} rounds of every customer screen",
               f"{fmt_mb(after_all)} (after 1 round {fmt_mb(after_one)})",
               f"after 1 round + {GROWTH_MIB:.0f} MiB",
               f"{(after_all - after_one) / 1024:+.1f} MiB",
               f"≤ +{GROWTH_MIB:.0f} MiB (no growth)",
               verdict(after_all - after_one <= GROWTH_MIB * 1024)),
        Figure("core event → on screen", f"median {fmt_ms(median(from_push))}, p95 "
               f"{fmt_ms(percentile(from_push, 95))}, max {fmt_ms(max(from_push))}",
               f"target {fmt_ms(EVENT_TARGET_S)}; one frame at 60 fps 16.7 ms",
               fmt_pct(max(from_push) / EVENT_TARGET_S), "≤ 1 s (max)",
               verdict(max(from_push) <= EVENT_TARGET_S)),
        Figure("intent sent → on screen", f"median {fmt_ms(median(from_send))}, p95 "
               f"{fmt_ms(percentile(from_send, 95))}", "includes the core's work", "",
               "none", verdict(None)),
        Figure("bill into the acceptor → amount on screen", f"median {fmt_ms(median(bill))},"
               f" max {fmt_ms(max(bill))}", "includes the virtual acceptor's polling", "",
               "none", verdict(None)),
    ]
    result.details += [
        "First frame: from just before the spawn to the READY line read here (the UI prints "
        "it right after its first buffer swap); the idle screen needs the core's hello too.",
        "Event to screen: from this benchmark's own connection receiving the core's push to "
        "the buffer swap of the UI frame that shows it (both CLOCK_MONOTONIC); events "
        f"{PAUSE_S * 1000:.0f} ms apart. A full frame costs tens of ms on llvmpipe.",
        "Memory: a bare Kivy window of the same size on Mesa llvmpipe is already above the "
        "150 MB target (software GL keeps its frame buffers, textures and LLVM in the "
        "process); the UI's own share is the 'above a bare Kivy window' row. A hardware GL "
        "driver would account for buffers differently: not measured here.",
        f"Memory after start: median VmRSS {fmt_mb(int(median(rss_idle)))}; every start here "
        "meets a warm page cache, a cold boot of a real terminal will be slower.",
    ]
    return result
