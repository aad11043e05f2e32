"""What the user waits for in napari, measured by driving the real widgets with real Qt mouse events.

Opens the bundled abdominal CT with `dinomed-napari view`'s dock, computes ViT-S features at 256 px
(random weights unless --weights is given: timing does not depend on the values), then paints strokes
with QMouseEvents sent to the canvas (press, moves over ~0.15 s, release), alternating liver and
background, and times:

- first visible feature slice, against one slice's bare forward pass (goal <= 3x);
- Cancel of a running extraction and of a volume prediction until the worker has stopped (goal <= 1 s);
- stroke (mouse release) to updated prediction shown (goal: median <= 300 ms, max <= 1 s);
- the largest event-loop gap (a 10 ms QTimer) during extraction and retraining (goal <= 150 ms).

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_gui.py [--strokes 28]

The last line reads ``stroke-to-prediction median N ms, max N ms; event-loop gap max N ms``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time

import numpy as np


class GapMeter:
    """Largest interval between ticks of a 10 ms timer on the GUI thread (while ``on``)."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.on, self.last, self.max_gap, self.gaps = False, None, 0.0, []
        self.phase, self.by_phase = "", {}  # largest gap per phase ("painting", "updating")
        self.spans: list = []  # (start, end) of every gap while on
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        if self.on and self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
            self.gaps.append(now - self.last)
            self.spans.append((self.last, now))
            self.by_phase[self.phase] = max(self.by_phase.get(self.phase, 0.0), now - self.last)
        self.last = now

    def measure(self, on: bool):
        self.on, self.last = on, None


class GapProfiler:
    """Where the GUI thread is while the 10 ms timer is late: a thread samples the main thread's stack
    every 5 ms once the last tick is over ``late`` s old, and counts each function once per sample."""

    def __init__(self, meter: GapMeter, late: float = 0.04):
        import collections
        import sys
        import threading

        self.meter, self.late, self.samples = meter, late, 0
        self.counts: collections.Counter = collections.Counter()
        self.leaves: collections.Counter = collections.Counter()  # innermost 3 Python frames
        self.timeline: list = []
        self._main = threading.main_thread().ident
        self._frames = sys._current_frames
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.wait(0.005):
            last = self.meter.last
            if not self.meter.on or last is None or time.perf_counter() - last < self.late:
                continue
            frame, stack = self._frames().get(self._main), []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
                frame = frame.f_back
            self.samples += 1
            self.timeline.append((time.perf_counter(), stack[:12]))
            self.counts.update(set(stack))
            self.leaves[" < ".join(stack[:3])] += 1

    def report(self, phase: str, top: int = 25) -> None:
        """Print the most frequent functions since the last report, and start counting afresh."""
        print(f"GUI thread while the timer was late ({phase}): {self.samples} samples of 5 ms")
        for name, n in self.counts.most_common(top):
            print(f"  {100 * n / max(1, self.samples):5.1f} %  {name}")
        print("  innermost frames:")
        for name, n in self.leaves.most_common(top // 2):
            print(f"  {100 * n / max(1, self.samples):5.1f} %  {name}")
        spans = sorted(self.meter.spans, key=lambda se: se[0] - se[1])[:4]
        for start, end in spans:
            print(f"  gap of {1000 * (end - start):.0f} ms:")
            seen: dict = {}
            for t, stack in self.timeline:
                if start <= t <= end:
                    key = " < ".join(stack[:7])
                    seen[key] = seen.get(key, 0) + 1
            for key, n in seen.items():
                print(f"    {n:3d} x {key}")
        self.meter.spans.clear()
        self.timeline.clear()
        self.counts.clear()
        self.leaves.clear()
        self.samples = 0


def pump(seconds: float = 0.0, until=None, timeout: float = 600.0) -> float:
    """Run the Qt event loop for ``seconds`` or until ``until()``; returns the time waited."""
    from qtpy.QtWidgets import QApplication

    app, t0 = QApplication.instance(), time.perf_counter()
    while True:
        app.processEvents()
        waited = time.perf_counter() - t0
        if (until is not None and until()) or (until is None and waited >= seconds):
            return waited
        if waited > timeout:
            raise TimeoutError("gave up waiting")
        time.sleep(0.002)


def canvas_point(viewer, zyx) -> tuple[float, float]:
    """Canvas pixel of a data point of the first layer (2D view: world -> screen via the camera)."""
    layer = viewer.layers[0]
    world = layer.data_to_world(zyx)
    scene = getattr(viewer, "scene", None)  # napari >= 0.9 (viewer.camera is deprecated there)
    cam = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
    canvas = viewer.window._qt_viewer.canvas.native
    x = (world[2] - cam.center[-1]) * cam.zoom + canvas.width() / 2
    y = (world[1] - cam.center[-2]) * cam.zoom + canvas.height() / 2
    return x, y


def stroke(viewer, points_yx, z: int, duration: float = 0.15) -> float:
    """Press, move through ``points_yx`` and release the left button on the canvas (real QMouseEvents);
    returns the release time (``time.perf_counter``)."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    mods = Qt.KeyboardModifier.NoModifier

    def send(kind, pos, button, buttons):
        local = QPointF(*pos)
        ev = QMouseEvent(kind, local, canvas.mapToGlobal(local), button, buttons, mods)
        QApplication.sendEvent(canvas, ev)

    pts = [canvas_point(viewer, (z, y, x)) for y, x in points_yx]
    send(QEvent.Type.MouseMove, pts[0], none, none)
    send(QEvent.Type.MouseButtonPress, pts[0], left, left)
    for p in pts[1:]:
        pump(duration / len(pts))
        send(QEvent.Type.MouseMove, p, none, left)
    send(QEvent.Type.MouseButtonRelease, pts[-1], left, none)
    return time.perf_counter()


def redraw_time(viewer, repeats: int = 5) -> float:
    """Median time of one synchronous canvas redraw with nothing else running (the floor of any gap:
    under Xvfb this is software OpenGL)."""
    canvas = viewer.window._qt_viewer.canvas.native
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        canvas.repaint()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_time(model: str, weights: str, resolution: int, slice_2d: np.ndarray) -> float:
    """Best of 3 bare forward passes of one slice (the yardstick for the first visible slice)."""
    import torch

    from dinomed_napari.live.backbones import cached_backbone
    from dinomed_napari.preprocess import to_network_batch

    bb = cached_backbone(model, weights)  # the one the Features tab loaded in the background
    x = to_network_batch(slice_2d[None].astype(np.float32), (resolution, resolution), bb.mean, bb.std)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            t0 = time.perf_counter()
            bb.patch_features(x)
            best = min(best, time.perf_counter() - t0)
    return best


def index_cost(shape=(200, 512, 512), repeats: int = 5) -> str:
    """What one stroke costs to find on a CT-sized scribble layer: a full rescan against the
    incremental index (:mod:`dinomed_napari.live.scribble_index`) fed the stroke's napari paint event."""
    from napari.layers import Labels

    from dinomed_napari.live.jobs import scribble_points
    from dinomed_napari.live.scribble_index import ScribbleIndex

    layer = Labels(np.zeros(shape, np.uint8))
    layer.brush_size = 10
    index = ScribbleIndex()
    layer.events.paint.connect(lambda e: index.painted(e.value, layer._undo_history))
    index.sync(layer.data, layer._undo_history)
    full, incremental = [], []
    for i in range(repeats):
        with layer.block_history():  # one stroke: a few brush dabs, one paint event
            for x in range(100, 160, 5):
                layer.paint((100, 200 + 10 * i, x), 1 + i % 2, refresh=False)
        t0 = time.perf_counter()
        a = index.sync(layer.data, layer._undo_history)
        t1 = time.perf_counter()
        b = scribble_points(layer.data)
        t2 = time.perf_counter()
        assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
        incremental.append(t1 - t0)
        full.append(t2 - t1)
    full_ms, index_ms = 1000 * statistics.median(full), 1000 * statistics.median(incremental)
    return (f"finding a stroke's voxels in a {'x'.join(map(str, shape))} scribble layer: full rescan "
            f"{full_ms:.0f} ms, scribble index {index_ms:.1f} ms")


def liver_strokes(organs: np.ndarray, z: int, n: int, rng) -> list[tuple[int, list]]:
    """``n`` short horizontal strokes (class, [(y, x) ...]): odd ones inside the liver, even ones outside."""
    from scipy import ndimage

    liver = organs[z] == 5
    inside = np.argwhere(ndimage.binary_erosion(liver, iterations=4))
    body = ndimage.binary_fill_holes(organs[z] > 0)
    outside = np.argwhere(~ndimage.binary_dilation(liver, iterations=6) & body)
    out = []
    for i in range(n):
        cls, pool = (1, inside) if i % 2 == 0 else (2, outside)
        y, x = pool[rng.integers(len(pool))]
        xs = np.clip(np.arange(x - 6, x + 7, 2), 0, organs.shape[2] - 1)
        out.append((cls, [(int(y), int(v)) for v in xs]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strokes", type=int, default=28)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--classifier", default="linear", choices=["linear", "rf"])
    parser.add_argument("--profile", action="store_true",
                        help="print where the GUI thread was while the event loop was late")
    args = parser.parse_args(argv)
    if "DINOMED_CACHE" not in os.environ:  # a fresh feature cache, removed when the run ends
        cache = tempfile.mkdtemp(prefix="bench_gui_cache_")
        os.environ["DINOMED_CACHE"] = cache
        atexit.register(shutil.rmtree, cache, ignore_errors=True)

    from dinomed_napari.cli.view import build_viewer

    viewer, dock = build_viewer(sample="ct_organs")
    viewer.window.resize(1920, 1040)
    pump(1.0)
    gaps = GapMeter()
    profiler = GapProfiler(gaps) if args.profile else None
    image = viewer.layers["CT abdomen (TotalSegmentator example)"]
    organs = np.asarray(viewer.layers["organs (TotalSegmentator)"].data)
    viewer.layers["organs (TotalSegmentator)"].visible = False
    z = 15
    viewer.dims.set_point(0, z * image.scale[0])
    fw, seg = dock.features, dock.segment
    fw.weights.value = "local file" if os.path.isfile(args.weights) else args.weights
    if os.path.isfile(args.weights):
        fw.weights_file.value = args.weights
    fw.resolution.value, fw.model.value = args.resolution, "S"
    t_warm = pump(until=lambda: not fw._warm.busy)
    print(f"backbone loaded in the background when the weights were chosen: {t_warm:.1f} s")
    fwd = forward_time("S", fw.weights_spec(), args.resolution, np.asarray(image.data[z]))
    redraw = redraw_time(viewer)
    print(f"canvas redraw alone (idle): {1000 * redraw:.0f} ms; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")

    # 1. extraction: first visible slice, event-loop gaps, then a cancelled run of another resolution
    first, shown = [], []  # the first slice's arrival on the GUI thread; the PCA layer shown with it
    fw._relay.partial.connect(lambda *_: first or first.append(time.perf_counter()))

    def on_screen() -> bool:
        pca = fw.pca_layer
        if not shown and pca is not None and pca.visible and np.asarray(pca.data).any():
            shown.append(time.perf_counter())
        return not fw.running
    gaps.measure(True)
    pump(until=lambda: gaps.last is not None)  # a tick just before the click: its own block counts too
    t0 = time.perf_counter()
    fw.run()
    pump(until=on_screen)
    t_extract = time.perf_counter() - t0
    gap_extract = gaps.max_gap
    if profiler is not None:
        profiler.report("extraction")
    t_arrive, t_first = first[0] - t0, shown[0] - t0
    fw.resolution.value = args.resolution + 32
    done = []
    fw._relay.progress.connect(lambda d, _t: done.append(d))
    fw.run()
    pump(until=lambda: len(done) >= 3)
    t0 = time.perf_counter()
    fw.cancel()
    pump(until=lambda: not fw.running)
    t_cancel_extract = time.perf_counter() - t0
    fw.resolution.value = args.resolution
    fw.run()  # back to the first features (from the cache)
    pump(until=lambda: not fw.running)
    print(f"extraction: {image.data.shape[0]} slices in {t_extract:.1f} s; first visible slice "
          f"{1000 * t_first:.0f} ms = {t_first / fwd:.1f}x one slice's forward ({1000 * fwd:.0f} ms; "
          f"it reached the GUI thread at {1000 * t_arrive:.0f} ms); "
          f"cancel {1000 * t_cancel_extract:.0f} ms; event-loop gap max {1000 * gap_extract:.0f} ms")

    # 2. strokes with the mouse, live retraining after each
    dock.tabs.setCurrentIndex(3)
    seg.classifier.value = args.classifier
    scr = seg.add_scribble_layer()
    viewer.reset_view()
    pump(0.5)
    shown = []
    real_show = seg._show
    seg._show = lambda out: (real_show(out), shown.append(time.perf_counter()))
    if not hasattr(seg, "_returned"):  # older widget: the job calls its bound _show directly
        seg._job._on_returned = seg._show
    latencies = []
    gaps.max_gap, gaps.by_phase = 0.0, {}
    rng = np.random.default_rng(0)
    for i, (cls, pts) in enumerate(liver_strokes(organs, z, args.strokes, rng)):
        scr.selected_label = cls
        n = len(shown)
        gaps.phase = "painting"  # mouse down: napari draws the stroke
        released = stroke(viewer, pts, z)
        gaps.phase = "updating"  # retrain, prediction shown, the hand moving on
        if i == 0:  # one class only: a hint, no prediction
            pump(0.4)
            continue
        pump(until=lambda n=n: len(shown) > n, timeout=30)
        pump(0.02)  # the canvas redraw of the updated layer
        latencies.append(shown[-1] - released)
        pump(0.2)  # the hand moves to the next stroke
    gap_train = gaps.max_gap
    if profiler is not None:
        profiler.report("strokes and retraining")
    gaps.phase = ""
    print(f"strokes: {len(latencies)} timed ({args.classifier}), scribbled voxels "
          f"{int(np.count_nonzero(scr.data))}; last status: {seg.status.value}")
    print(f"event-loop gap max while painting (mouse down) {1000 * gaps.by_phase.get('painting', 0):.0f} ms, "
          f"while retraining / showing {1000 * gaps.by_phase.get('updating', 0):.0f} ms; scribble index: "
          f"{getattr(getattr(seg, 'index', None), 'rescans', '-')} full rescans in {args.strokes} strokes")
    try:
        print(index_cost())
    except ImportError:  # a version without the scribble index
        pass

    # 3. cancel a volume prediction
    seg.predict_volume()
    pump(until=lambda: seg.progress.value >= 1 or not seg._job.busy, timeout=60)
    t0 = time.perf_counter()
    seg.cancel()
    pump(until=lambda: not seg._job.busy)
    t_cancel_pred = time.perf_counter() - t0
    gaps.measure(False)
    print(f"volume prediction cancel {1000 * t_cancel_pred:.0f} ms")
    viewer.close()
    gap = max(gap_extract, gap_train)
    p95 = 1000 * float(np.percentile(gaps.gaps, 95)) if gaps.gaps else 0.0
    print(f"event-loop gap 95th percentile {p95:.0f} ms over {len(gaps.gaps)} timer ticks")
    med, worst = 1000 * statistics.median(latencies), 1000 * max(latencies)
    print(f"event-loop gap max: extraction {1000 * gap_extract:.0f} ms, retraining {1000 * gap_train:.0f} ms")
    print(f"stroke-to-prediction median {med:.0f} ms, max {worst:.0f} ms; "
          f"event-loop gap max {1000 * gap:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
