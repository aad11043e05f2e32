"""Dock widget "Tumour isolation": seed points + two thresholds, live preview on the current slice.

Calls :func:`dinomed_napari.analysis.isolate.isolate` on the session's PCA maps: with ``index=`` for
the preview (one plane, fast) and on the whole volume for "Apply to volume" (a new labels layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, ProgressBar, PushButton

from dinomed_napari.live.display import display_sample
from dinomed_napari.live.jobs import PREVIEW_DELAY_MS

from .layers import layer_array
from .results import add_aligned_points, find_result, keep_previous, place_below, put_slice, result_layer
from .session import SESSIONS
from .widget_base import DinomedWidget, LayerChooser, LayerWatch
from .widget_similarity import points_to_voxels
from .workers import Debouncer, LatestJob

CHANNELS = (("auto (threshold around the seed)", "auto"), ("PC1", "pc1"), ("PC2", "pc2"), ("PC3", "pc3"),
            ("similarity to seeds", "similarity"),
            ("image intensity (e.g. PET SUV)", "image"))
INNER_RULES = (("Otsu", "otsu"), ("slider value", "value"), ("41% of seed max", "41%"),
               ("50% of seed max", "50%"))
PREVIEW = "isolation preview"

#: What to try when a seed is outside the result, by the step that removed it (``isolate``'s "dropped").
DROPPED = {"foreground": ". A seed is not in the result: step 1 (PC1 foreground) removed it; untick it or "
                         "choose the auto channel",
           "inner": ". A seed is not in the result: its value is on the other side of the inner threshold; "
                    "choose another inner rule or threshold, or the auto channel"}


class IsolateWidget(DinomedWidget):
    """Isolate the structure under the seeds: PC1 foreground, then a channel threshold, 3D connectivity."""

    title = "Isolate"

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.seeds = LayerChooser(self.viewer, "points", "seeds", tooltip="points inside the structure")
        self.new_seeds = PushButton(text="New seed layer")
        self.foreground = CheckBox(text="step 1: PC1 foreground", value=True)
        self.fg_auto = CheckBox(text="PC1 threshold: Otsu", value=True)
        self.fg_threshold = FloatSlider(label="PC1 threshold", min=-1.0, max=1.0, value=0.0, step=0.01)
        self.channel = ComboBox(label="inner channel", choices=CHANNELS, value="auto",
                                tooltip="auto: intensity threshold picked in a box around the seed, PC1 "
                                        "only when it holds the seed; the preview is the 3D result's slice")
        self.inner_rule = ComboBox(label="inner rule", choices=INNER_RULES, value="otsu")
        self.inner_threshold = FloatSlider(label="inner threshold", min=-1.0, max=1.0, value=0.0,
                                           step=0.01)
        self.live = CheckBox(text="live preview on the current slice", value=True)
        self.apply_button = PushButton(text="Apply to volume",
                                       tooltip="isolate in 3D; the previous result is kept as "
                                               "'isolated (previous)'")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=0, visible=False)  # busy indicator
        controls = [self.foreground, self.fg_auto, self.fg_threshold, self.channel, self.inner_rule,
                    self.inner_threshold, self.live]
        buttons = Container(widgets=[self.apply_button, self.cancel_button], layout="horizontal",
                            labels=False)
        self.extend([self.seeds, self.new_seeds, *controls, buttons, self.progress, self.status_box])
        self.cancel_button.clicked.connect(self.cancel)
        self.new_seeds.clicked.connect(self.add_seed_layer)
        self.apply_button.clicked.connect(self.apply)
        self._debounce = Debouncer(self.preview, PREVIEW_DELAY_MS, self.native)
        for w in controls:
            w.changed.connect(self._debounce.trigger)
        self.channel.changed.connect(self.fit_slider_ranges)
        self.channel.changed.connect(self._explicit_controls)
        self._explicit_controls()
        self.listen(self.viewer.dims.events.current_step, self._debounce.trigger)
        self._job = LatestJob(self._show_preview, lambda exc: self.fail(exc, "isolation preview"))
        self._apply = LatestJob(self._show_result, lambda exc: self.fail(exc, "isolation"),
                                on_idle=self._finished)
        self.jobs.extend([self._job, self._apply])
        self.seeds._refresh()
        self._watch = LayerWatch(self.seeds, ("data",), self._debounce.trigger)
        self.on_close(self._watch.close)
        self.on_close(self.seeds.close_connections)
        self.on_close(self._debounce.stop)
        self.preview_layer = None
        self.result_layer = None
        self._ranges_for = None
        self._preview_at: tuple | None = None

    def _explicit_controls(self, *_: Any) -> None:
        """The thresholds of an explicit channel, greyed out under auto (which picks its own: a rule chosen
        there would be ignored)."""
        explicit = self.channel.value != "auto"
        why = ("auto picks its own threshold around the seed: choose an inner channel (e.g. image "
               "intensity for 41% of a PET's SUVmax) to set it")
        for w in (self.fg_auto, self.fg_threshold, self.inner_rule, self.inner_threshold):
            w.enabled = explicit
            w.tooltip = None if explicit else why

    def add_seed_layer(self) -> Any:
        image = self.image_layer_or_notify("isolation")
        if image is None:
            return None
        layer = add_aligned_points(self.viewer, image, "seeds", color="red")
        self.seeds.value = layer
        return layer

    def fit_slider_ranges(self, *_: Any) -> None:
        """Put the sliders' ranges on the 1st-99th percentiles of PC1 and of the inner channel."""
        try:
            image = self.image_layer()
            session = SESSIONS.get(image)
            pca = session.pca_maps()
        except Exception:  # no features yet: the sliders keep their ranges until there are
            return
        self._ranges_for = (session.primary.key, self.channel.value)
        # Components on the patch grid: the pixel maps interpolate them (same range), and the full-size
        # float32 maps (12 bytes per voxel) are never assembled for a slider.
        self._set_range(self.fg_threshold, pca.patch[..., 0])
        ch = self.channel.value
        if ch.startswith("pc") and int(ch[2:]) <= pca.basis.n_components:
            self._set_range(self.inner_threshold, pca.patch[..., int(ch[2:]) - 1])
        elif ch == "image":
            self._set_range(self.inner_threshold, display_sample(layer_array(image)))
        else:
            self.inner_threshold.min, self.inner_threshold.max = -1.0, 1.0

    @staticmethod
    def _set_range(slider: FloatSlider, values: np.ndarray) -> None:
        step = 2 if values.size > 100_000 else 1  # small grids (patches) are read whole
        lo, hi = (float(v) for v in np.percentile(values[::step, ::step, ::step], [1, 99]))
        hi = hi if hi > lo else lo + 1.0
        value = min(max(slider.value, lo), hi)
        slider.min, slider.max = lo, hi
        slider.step = (hi - lo) / 200
        slider.value = value

    def _request(self, index: int | None) -> tuple:
        """Everything one isolate() call needs, read on the GUI thread (raises on bad input)."""
        image = self.image_layer()
        session = SESSIONS.get(image)
        fv = session.primary
        pca = session.pca_maps()
        seeds_layer = self.seeds.value
        seeds = points_to_voxels(seeds_layer, image) if seeds_layer is not None else np.empty((0, 3))
        seeds = seeds if len(seeds) else None
        ch = self.channel.value
        if ch == "auto":  # one 3D answer; a preview shows its plane, so preview and Apply agree
            if seeds is None:
                raise ValueError("auto isolation needs a seed: add a point inside the structure")
            pc1 = pca.component(0) if self.foreground.value else None  # read around the seed only
            kwargs = dict(auto=True, image=layer_array(image), seeds=seeds,  # reads a box around the seeds
                          spacing=tuple(float(v) for v in image.scale[-3:]), pc1=pc1, index=index,
                          axis=session.axis)
            return image, session, None, kwargs
        channel = np.asarray(layer_array(image)) if ch == "image" else ch  # isolate compares in its own type
        source = fv if ch == "similarity" else pca
        rule = self.inner_rule.value
        inner = float(self.inner_threshold.value) if rule == "value" else rule
        fg = None if self.fg_auto.value else float(self.fg_threshold.value)
        kwargs = dict(channel=channel, seeds=seeds, fg_threshold=fg, inner_threshold=inner,
                      foreground=bool(self.foreground.value), index=index, axis=session.axis,
                      return_thresholds=True)
        return image, session, source, kwargs

    def preview(self, *_: Any) -> None:
        """Isolate on the current slice only (off the GUI thread) and show it in the preview layer."""
        if not self.live.value:
            return
        try:
            image = self.image_layer()
            session = SESSIONS.get(image)
            if not session.ready:
                return  # nothing to preview before features exist (Apply reports the error)
            if self._ranges_for != (session.primary.key, self.channel.value):
                self.fit_slider_ranges()
            index = self.current_index(image, session.axis)
            image, session, source, kwargs = self._request(index)
        except Exception as exc:  # bad input: notification, widget stays usable
            self.fail(exc, "isolation preview")
            return
        self._job.submit(lambda _cancel: (image, session.axis, index, *run_isolation(source, kwargs)))

    def _show_preview(self, result: tuple) -> None:
        image, axis, index, plane, thresholds = result
        if image not in self.viewer.layers:
            return
        layer = find_result(self.viewer, image, PREVIEW)
        if layer is None or layer.data.shape != image.data.shape:
            layer = result_layer(self.viewer, image, PREVIEW, np.zeros(image.data.shape, np.uint8), "labels",
                                 opacity=0.5)
        if self._preview_at is not None and self._preview_at != (axis, index):
            put_slice(layer, 0, *self._preview_at)  # the preview shows one slice only
        put_slice(layer, plane.astype(np.uint8), axis, index)
        self._preview_at = (axis, index)
        self.preview_layer = layer
        place_below(self.viewer, layer, self.seeds.value)  # the seeds stay visible
        self._show_thresholds(thresholds, f"preview slice {index}: {int(plane.sum())} px")

    def _show_thresholds(self, t: dict, what: str) -> None:
        if "recipe" in t:
            self.say(f"{what}; {t['recipe']}" + (f". {t['note']}" if t.get("note") else ""))
            return
        fg = "off" if t["foreground"] is None else f"{t['foreground']:.3g}"
        self.say(f"{what}; PC1 > {fg}, inner > {t['inner']:.3g}" + DROPPED.get(t.get("dropped"), ""))

    def apply(self) -> None:
        """Isolate in the whole volume (worker thread) and add the result as a new labels layer."""
        if self._apply.busy:
            return
        try:
            image, session, source, kwargs = self._request(None)
            label = session.label
        except Exception as exc:  # no image / no features / bad seeds
            self.fail(exc, "isolation")
            return
        self.say("isolating in the volume ...")
        self.apply_button.enabled, self.cancel_button.enabled, self.progress.visible = False, True, True
        self._apply.submit(lambda _cancel: (image, label, *run_isolation(source, kwargs)))

    def cancel(self) -> None:
        """Stop waiting for the running isolation (its result is dropped)."""
        if self._apply.cancel():
            self.say("isolation cancelled")

    def _show_result(self, result: tuple) -> None:
        image, label, mask, thresholds = result
        if self.gone(image, "isolation"):
            return
        keep_previous(self.viewer, image, "isolated")
        self.result_layer = result_layer(self.viewer, image, "isolated", mask.astype(np.uint8), "labels",
                                         label)
        place_below(self.viewer, self.result_layer, self.seeds.value)
        voxels = int(mask.sum())
        ml = voxels * float(np.prod(image.scale[-3:])) / 1000.0
        self._show_thresholds(thresholds, f"{voxels} voxels ({ml:.3g} ml if mm)")

    def _finished(self) -> None:
        self.apply_button.enabled, self.cancel_button.enabled, self.progress.visible = True, False, False


def run_isolation(source, kwargs: dict) -> tuple:
    """(mask or plane, thresholds) for the widget: the auto recipe (the plane of its 3D result when
    ``index`` is set) or :func:`dinomed_napari.analysis.isolate.isolate` with the chosen channel."""
    if kwargs.get("auto"):
        from dinomed_napari.analysis.isolate_auto import auto_isolate

        res = auto_isolate(kwargs["image"], kwargs["seeds"], kwargs["spacing"], pc1=kwargs["pc1"])
        mask = res.mask if kwargs["index"] is None else res.plane(kwargs["index"], kwargs["axis"])
        return mask, {**res.thresholds, "recipe": res.recipe, "note": res.note}
    from dinomed_napari.analysis.isolate import isolate

    return isolate(source, **kwargs)
