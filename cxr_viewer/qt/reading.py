"""Reading habits on the main window: studies and their priors, stepping, housekeeping, the tag browser.

Slots of the worklist actions (``reading.*`` in `cxr_viewer.qt.actions.MENUS`) and the pipeline news
about studies (an image moved to its DICOM study, a duplicate dropped, a prior's pixels). The grouping
itself is `cxr_viewer.core.studies`; the widgets are `qt.widgets.worklist` and `qt.widgets.compare_view`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut

from cxr_viewer.core.pipeline import StudyStatus
from cxr_viewer.qt.tag_browser import TagBrowser

if TYPE_CHECKING:
    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.pipeline import Study
    from cxr_viewer.core.studies import StudyGroup
    from cxr_viewer.qt.main_window import MainWindow

__all__ = ["ReadingControls"]

#: keys on the image view (RadiAnt / Weasis habits): arrows step images, PageUp/PageDown studies
_IMAGE_VIEW_KEYS = (
    (Qt.Key.Key_Down, "select_image_step", 1),
    (Qt.Key.Key_Right, "select_image_step", 1),
    (Qt.Key.Key_Up, "select_image_step", -1),
    (Qt.Key.Key_Left, "select_image_step", -1),
)


class ReadingControls:
    """What the window does for studies (as opposed to files); built once by the main window."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.worklist = window.worklist
        self.prior_view = window.prior_view
        self.tag_browser: TagBrowser | None = None
        hooks = window.pipeline.hooks
        hooks.regrouped = self._regrouped
        hooks.duplicate = self._duplicate
        hooks.show_prior = self._show_prior
        self.shortcuts: list[QShortcut] = []

    def bind_actions(self) -> None:
        """Once the window's actions exist: the extra keys (arrows on the image view, PageUp/PageDown)."""
        window = self.window
        for key, method, step in _IMAGE_VIEW_KEYS:
            shortcut = QShortcut(QKeySequence(key), window.image_view)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda m=method, s=step: getattr(self.worklist, m)(s))
            self.shortcuts.append(shortcut)
        window.next_action.setShortcuts([QKeySequence(Qt.Key.Key_PageDown), QKeySequence("Ctrl+Down")])
        window.prev_action.setShortcuts([QKeySequence(Qt.Key.Key_PageUp), QKeySequence("Ctrl+Up")])
        panel = window.worklist_panel
        panel.flagged_only.toggled.connect(window.flagged_only_action.setChecked)

    # ------------------------------------------------------------------------------ housekeeping
    def remove_study(self) -> None:
        """Worklist > Remove study: the current row's study leaves the list (its files are not touched)."""
        ids = self.worklist.current_study_images()
        if not ids:
            return
        removed = self.window.pipeline.remove(ids)
        self.worklist.remove_images(removed)
        self.window.status.message(f"Removed a study ({len(removed)} image(s)) from the worklist", 5000)
        if self.worklist.current_study() is None:
            self.window.show_study(-1)

    def toggle_read(self) -> None:
        """Worklist > Mark read/unread (unread studies are bold)."""
        read = self.worklist.toggle_read()
        if read is not None:
            self.window.status.message("Marked read" if read else "Marked unread", 3000)

    def set_flagged_only(self, on: bool) -> None:
        """Worklist > Flagged only."""
        box = self.window.worklist_panel.flagged_only
        if box.isChecked() != on:
            box.setChecked(on)
        self.worklist.set_flagged_only(on)

    def focus_search(self) -> None:
        """Worklist > Search by name: the search box takes the keyboard."""
        search = self.window.worklist_panel.search
        search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        search.selectAll()

    # ------------------------------------------------------------------------------ current and prior
    def set_compare(self, on: bool) -> None:
        """View > Compare with prior: the prior study beside the current one, zoom and pan linked."""
        self.prior_view.setVisible(on)
        if on:
            self.update_prior()

    def prior_for(self, study_id: int) -> StudyGroup | None:
        """The study to compare with an image's: the newest older study of the same patient."""
        patient = self.worklist.patient_of(study_id)
        key = self.worklist.study_key_of(study_id)
        if patient is None:
            return None
        keys = [s.key for s in patient.studies]  # newest first
        at = keys.index(key) if key in keys else -1
        return patient.studies[at + 1] if 0 <= at < len(keys) - 1 else None

    def update_prior(self) -> None:
        """Show the prior of the shown study (when the comparison is on)."""
        if not self.prior_view.isVisible():
            return
        shown = self.window.pipeline.shown
        prior = self.prior_for(shown) if shown >= 0 else None
        if prior is None:
            self.window.pipeline.show_prior(-1)
            self.prior_view.show_message("No prior study of this patient in the worklist")
            return
        study = self.window.studies.get(prior.best_image)
        if study is None or study.status is StudyStatus.ERROR:
            self.prior_view.show_message("The prior study cannot be shown")
            return
        image = self.window.pipeline.show_prior(study.id)
        if image is not None:
            self._show_prior(study, image)
        else:
            self.prior_view.show_message(f"Loading the prior ({prior.label})...")

    def _show_prior(self, study: Study, image: XrayImage) -> None:
        group = self.worklist.study_of(study.id)
        label = group.label if group is not None else ""
        self.prior_view.show_image(image, f"Prior: {label} \u00b7 {study.name}")

    # ------------------------------------------------------------------------------ pipeline news
    def _regrouped(self, study: Study) -> None:
        if study.facts is not None:
            self.worklist.set_facts(study.id, study.facts)

    def _duplicate(self, study: Study, original: int) -> None:
        self.worklist.remove_images([study.id])
        first = self.window.studies.get(original)
        other = first.name if first is not None else "an image already in the worklist"
        self.window.status.message(
            f"{study.name} is the same image as {other} (same SOP Instance UID): not added again", 10000
        )

    # ------------------------------------------------------------------------------ tags
    def show_tags(self) -> None:
        """View > DICOM tags: the shown file's header (patient data on screen only)."""
        study = self.window.studies.get(self.window.pipeline.shown)
        if study is None:
            self.window.status.message("No study shown: select one to see its DICOM tags", 5000)
            return
        if self.tag_browser is not None:
            self.tag_browser.close()
        self.tag_browser = TagBrowser(study.path, self.window)
        self.tag_browser.show()

    def close(self) -> None:
        """On window close."""
        if self.tag_browser is not None:
            self.tag_browser.close()
        self.prior_view.close_view()
