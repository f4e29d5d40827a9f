"""The window's actions, written once: one row per action gives its menu, text, key, tip and toolbar text.

:func:`build_actions` turns the table into ``QAction`` objects on the window (``window.<name>``), menus
in table order (a separator between groups) and a toolbar with the actions that have toolbar text, in
the same order. Slots are looked up on the window by name, so the table is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QActionGroup, QKeySequence

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar

__all__ = ["MENUS", "ActionSpec", "BuiltMenu", "MenuSpec", "action_names", "build_menu", "make_action"]

Shortcut = str | QKeySequence.StandardKey | None


@dataclass(frozen=True)
class ActionSpec:
    """One action.

    Attributes:
        name: the window attribute that holds it (``open_files_action``...).
        text: menu text (``&`` marks the mnemonic).
        slot: the window method it calls (``"open_files_dialog"``, or dotted: ``"view.fit"``), with
            ``args`` bound in front.
        shortcut: key sequence or a standard key.
        tip: tool and status tip (the text without ``&`` when empty).
        toolbar: toolbar text; None keeps it off the toolbar.
        checkable: a toggle (the slot gets the new state after ``args``).
        group: actions with the same group name are exclusive (one checked at a time).
        args: leading arguments of the slot.
    """

    name: str
    text: str
    slot: str
    shortcut: Shortcut = None
    tip: str = ""
    toolbar: str | None = None
    checkable: bool = False
    group: str = ""
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class MenuSpec:
    """A menu: groups of actions, separated in the menu (and on the toolbar when both hold actions)."""

    title: str
    groups: tuple[tuple[ActionSpec, ...], ...]
    submenus: tuple[tuple[str, str], ...] = field(default=())  # (window attribute, title), after the groups


_A = ActionSpec  # short, for the table
_OPEN = QKeySequence.StandardKey.Open
_QUIT = QKeySequence.StandardKey.Quit

MENUS: tuple[MenuSpec, ...] = (
    MenuSpec(
        "&File",
        (
            (
                _A("open_files_action", "&Open files...", "open_files_dialog", _OPEN, toolbar="Open files"),
                _A("open_folder_action", "Open &folder...", "open_folder_dialog", "Ctrl+Shift+O",
                           toolbar="Open folder"),
            ),
            (
                _A("open_pacs_action", "Open from &PACS...", "pacs.open_dialog", "Ctrl+Shift+P",
                           "Search a DICOMweb server (QIDO-RS), fetch a study (WADO-RS) into the worklist"),
                _A("export_action", "&Export results...", "export.export_dialog", "Ctrl+E",
                           "The current study or the worklist as DICOM SR + Secondary Capture, CSV and a "
                           "one-page PNG/PDF summary"),
            ),
            (
                _A("load_model_action", "&Load model...", "load_model_dialog", "Ctrl+L",
                           "Load a cral-train checkpoint (*.safetensors)"),
            ),
            (_A("clear_action", "&Clear worklist", "clear_worklist"),),
            (_A("quit_action", "&Quit", "close", _QUIT),),
        ),
    ),
    MenuSpec(
        "&View",
        (
            (
                _A("tool_window_action", "&Window/level (left drag)", "view.set_tool", "W", toolbar="W/L",
                           checkable=True, group="tool", args=("window",)),
                _A("tool_pan_action", "&Pan (left drag)", "view.set_tool", "P", toolbar="Pan", checkable=True,
                           group="tool", args=("pan",)),
                _A("tool_measure_action", "&Measure length (left drag)", "view.set_tool", "M",
                           toolbar="Measure", checkable=True, group="tool", args=("measure",)),
                _A("tool_angle_action", "An&gle (drag, then click)", "view.set_tool",
                           "G", "Angle: drag from one end to the vertex, then drag or click the other end",
                           toolbar="Angle", checkable=True, group="tool", args=("angle",)),
                _A("tool_ctr_action", "&Cardiothoracic ratio (two horizontal drags)", "view.set_tool", "C",
                           "Cardiothoracic ratio: drag the heart's widest width, then the thorax's",
                           toolbar="CTR", checkable=True, group="tool", args=("ctr",)),
                _A("tool_ellipse_action", "&Elliptical ROI (left drag)", "view.set_tool", "E",
                           "Elliptical ROI: mean and SD of the stored values inside", toolbar="ROI",
                           checkable=True, group="tool", args=("ellipse",)),
            ),
            (
                _A("fit_action", "&Fit to window", "view.fit", "F", toolbar="Fit"),
                _A("actual_pixels_action", "Actual &pixels (1:1)", "view.actual_pixels", "Ctrl+1",
                           "Zoom 100 %: one image pixel per screen pixel", toolbar="1:1"),
                _A("zoom_in_action", "Zoom &in", "view.zoom", "+", toolbar="Zoom +", args=(1.25,)),
                _A("zoom_out_action", "Zoom &out", "view.zoom", "-", toolbar="Zoom -", args=(0.8,)),
                _A("reset_view_action", "Reset &view", "view.reset_view", "Ctrl+0"),
            ),
            (
                _A("auto_window_action", "&Auto window", "view.auto_window", "A", toolbar="Auto W/L"),
                _A("invert_action", "&Invert", "view.set_invert", "I", toolbar="Invert", checkable=True),
                _A("rotate_action", "&Rotate right", "view.rotate", "R", toolbar="Rotate", args=(True,)),
                _A("rotate_left_action", "Rotate &left", "view.rotate", "Shift+R", args=(False,)),
                _A("flip_action", "Flip &horizontal", "view.flip", "H", toolbar="Flip", args=(True,)),
                _A("flip_v_action", "Flip &vertical", "view.flip", "V", args=(False,)),
            ),
            (
                _A("clear_measure_action", "Clear &measurements", "view.clear_measurement", "Esc",
                           "Remove every measurement of the shown image"),
                _A("delete_measure_action", "&Delete measurement", "view.delete_measurement", "Backspace",
                           "Remove the measurement under the mouse (else the newest one)"),
            ),
            (
                _A("save_preset_action", "&Save window as preset...", "view.save_preset", "Ctrl+Shift+S",
                           "Keep the current window (in stored values) as your own preset"),
                _A("forget_presets_action", "Forget my window presets", "view.forget_presets"),
            ),
            (
                _A("compare_action", "&Compare with prior", "reading.set_compare", "Shift+P",
                           "The patient's prior study beside this one, zoom and pan linked", toolbar="Prior",
                           checkable=True),
                _A("tags_action", "DICOM &tags...", "reading.show_tags", "Ctrl+I",
                           "Every element of the shown file's header (patient data on screen only)"),
            ),
        ),
        submenus=(("preset_menu", "Window &presets"),),
    ),
    MenuSpec(
        "&Analysis",
        (
            (
                _A("cancel_action", "&Cancel analysis", "cancel_analysis", "Ctrl+.",
                           "Stop analysing queued studies", toolbar="Cancel analysis"),
                _A("reanalyse_action", "&Analyse remaining", "analyse_remaining", "Ctrl+Return",
                           "Queue studies that were cancelled or not yet analysed"),
            ),
            (
                _A("next_action", "&Next study", "worklist.select_step", "Ctrl+Down", args=(1,)),
                _A("prev_action", "&Previous study", "worklist.select_step", "Ctrl+Up", args=(-1,)),
            ),
            (
                _A("next_image_action", "Next &image", "worklist.select_image_step", "Ctrl+Right", args=(1,)),
                _A("prev_image_action", "Previous i&mage", "worklist.select_image_step", "Ctrl+Left",
                           args=(-1,)),
            ),
            (
                _A("remove_study_action", "&Remove study from worklist", "reading.remove_study", "Del"),
                _A("read_action", "Mark &read/unread", "reading.toggle_read", "Ctrl+U"),
                _A("flagged_only_action", "&Flagged only", "reading.set_flagged_only", "Ctrl+Shift+F",
                           "Show only studies with a finding at or above its threshold", checkable=True),
                _A("search_action", "&Search by name", "reading.focus_search", "Ctrl+F"),
            ),
        ),
    ),
    MenuSpec(
        "&Help",
        (
            (
                _A("shortcuts_action", "&Mouse and keyboard...", "show_shortcuts", "F1"),
                _A("about_model_action", "About &model...", "show_model_card"),
                _A("about_action", "&About", "show_about"),
            ),
        ),
    ),
)  # fmt: skip


def make_action(
    window: QMainWindow,
    text: str,
    slot: Callable[..., Any],
    shortcut: Shortcut = None,
    tip: str = "",
    checkable: bool = False,
) -> QAction:
    """A ``QAction`` on ``window`` (so that its key works anywhere in the window)."""
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    plain = tip or text.replace("&", "")
    action.setToolTip(plain)
    action.setStatusTip(plain)
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    window.addAction(action)
    return action


def _slot(window: QMainWindow, spec: ActionSpec) -> Callable[..., Any]:
    method: Callable[..., Any] = attrgetter(spec.slot)(window)
    if spec.checkable and not spec.group:  # a toggle: the slot gets the new state

        def toggled(on: bool = False) -> None:
            method(*spec.args, bool(on))

        return toggled

    def triggered(_checked: bool = False) -> None:
        method(*spec.args)

    return triggered


@dataclass
class BuiltMenu:
    """What :func:`build_menu` made: the menu, its actions and its submenus by name."""

    menu: QMenu
    actions: dict[str, QAction] = field(default_factory=dict)
    submenus: dict[str, QMenu] = field(default_factory=dict)


def build_menu(
    window: QMainWindow, spec: MenuSpec, toolbar: QToolBar, groups: dict[str, QActionGroup]
) -> BuiltMenu:
    """Create ``spec``'s actions (also set as ``window.<name>``), its menu, and their toolbar entries."""
    menu = window.menuBar().addMenu(spec.title)
    built = BuiltMenu(menu)
    for i, group in enumerate(spec.groups):
        if i:
            menu.addSeparator()
        on_toolbar = [a for a in group if a.toolbar is not None]
        if on_toolbar and toolbar.actions():
            toolbar.addSeparator()
        for a in group:
            action = make_action(window, a.text, _slot(window, a), a.shortcut, a.tip, a.checkable)
            if a.group:
                groups.setdefault(a.group, QActionGroup(window)).addAction(action)
            if a.toolbar is not None:
                action.setIconText(a.toolbar)
                toolbar.addAction(action)
            menu.addAction(action)
            setattr(window, a.name, action)
            built.actions[a.name] = action
    for attribute, title in spec.submenus:
        built.submenus[attribute] = menu.addMenu(title)
        setattr(window, attribute, built.submenus[attribute])
    return built


def action_names(menus: Sequence[MenuSpec] = MENUS) -> list[str]:
    """Every action's attribute name, in table order (for tests and docs)."""
    return [a.name for m in menus for g in m.groups for a in g]
