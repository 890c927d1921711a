"""The terminal renderer on a replayed event stream: what stays on the screen when a
partial reply is discarded, and how estimated token counts are shown.

The events are fed as the agent emits them; the renderer draws on a rich console whose
output goes through :class:`tests.repl.screen.Screen`, so the assertions read the
screen after the live region was redrawn and erased, as a user would.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from pygent import events as ev
from pygent.repl.mdstream import LIVE_WINDOW, RENDER_INTERVAL
from pygent.repl.render import Renderer
from pygent.repl.transcript import Transcript
from tests.repl.screen import Screen

WIDTH = 120
MARKER = "(reply discarded: the stream was cut; the new answer follows)"


class Shown:
    """A renderer on a fake terminal (or a pipe), fed events on the running loop."""

    def __init__(self, *, terminal: bool = True) -> None:
        self.out = io.StringIO()
        self.console = Console(
            file=self.out,
            force_terminal=terminal,
            width=WIDTH,
            height=40,
            color_system=None,
            legacy_windows=False,
        )
        self.transcript = Transcript()
        self.renderer = Renderer(self.console, self.transcript)
        self.renderer.attach(asyncio.get_running_loop())

    async def feed(self, *events: ev.Event) -> None:
        for event in events:
            self.renderer.handle(event)
            # Let the throttled re-render of streamed text run, as it does between chunks.
            await asyncio.sleep(RENDER_INTERVAL * 1.5)

    def screen(self) -> list[str]:
        """The non-blank lines on the screen, without their indentation."""
        self.renderer.close()
        screen = Screen(WIDTH)
        screen.feed(self.out.getvalue())
        return [line.strip() for line in screen.lines if line.strip()]

    def saved(self, tmp_path: Path) -> str:
        path = tmp_path / "transcript.txt"
        self.transcript.write(path)
        return path.read_text(encoding="utf-8")


def cut() -> ev.MessageDiscarded:
    return ev.MessageDiscarded(reason="the stream was cut")


async def test_a_partial_reply_still_in_the_live_window_is_erased(tmp_path: Path) -> None:
    shown = Shown()
    await shown.feed(
        ev.TurnStarted(prompt="what is 6 x 7?"),
        ev.MessageDelta(text="The answer is 4"),
        cut(),
        ev.MessageDelta(text="The answer is "),
        ev.MessageDelta(text="42."),
        ev.MessageDone(text="The answer is 42."),
        ev.TurnEnded(text="The answer is 42."),
    )
    # Nothing of the cut attempt and no marker: it never left the live window.
    assert shown.screen() == ["The answer is 42."]
    saved = shown.saved(tmp_path)
    assert "The answer is 42." in saved and "discarded" not in saved


async def test_a_partial_reply_that_scrolled_into_the_terminal_is_marked_void() -> None:
    shown = Shown()
    items = "".join(f"- point {i}\n" for i in range(1, 13))
    await shown.feed(ev.TurnStarted(prompt="list them"), ev.MessageDelta(text=items), cut())
    await shown.feed(ev.MessageDone(text="Only one point."), ev.TurnEnded(text="Only one point."))
    lines = shown.screen()
    committed = [f"• point {i}" for i in range(1, 12 - LIVE_WINDOW + 1)]
    # The lines printed for good stay, the live tail is gone, then the marker and the answer.
    assert lines == [*committed, MARKER, "Only one point."]


async def test_a_reply_finished_by_a_notice_is_marked_void_too() -> None:
    shown = Shown()
    await shown.feed(
        ev.TurnStarted(prompt="go"),
        ev.MessageDelta(text="Partial thought"),
        ev.Notice(level="warning", text="the model's stream ended early; asking again"),
        cut(),
        ev.MessageDelta(text="Whole answer."),
        ev.MessageDone(text="Whole answer."),
        ev.TurnEnded(text="Whole answer."),
    )
    assert shown.screen() == [
        "Partial thought",
        "warning: the model's stream ended early; asking again",
        MARKER,
        "Whole answer.",
    ]


async def test_a_discard_leaves_the_earlier_model_calls_alone() -> None:
    shown = Shown()
    await shown.feed(
        ev.TurnStarted(prompt="look"),
        ev.MessageDelta(text="Let me look."),
        ev.MessageDone(text="Let me look."),
        ev.ToolCallProposed(call_id="c1", tool="stop", arguments={"reason": ""}),
        ev.ToolCallStarted(call_id="c1", tool="stop"),
        ev.ToolCallFinished(call_id="c1", tool="stop", output="stopped"),
        ev.MessageDelta(text="It is the ent"),
        ev.MessageDiscarded(reason=""),
        ev.MessageDelta(text="It is the entry point."),
        ev.MessageDone(text="It is the entry point."),
        ev.TurnEnded(text="It is the entry point."),
    )
    assert shown.screen() == ["Let me look.", "It is the entry point."]


async def test_a_pipe_gets_only_the_new_answer() -> None:
    shown = Shown(terminal=False)
    await shown.feed(
        ev.TurnStarted(prompt="q"),
        ev.MessageDelta(text="Half an ans"),
        cut(),
        ev.MessageDone(text="A whole answer."),
        ev.TurnEnded(text="A whole answer."),
    )
    assert shown.out.getvalue().strip() == "A whole answer."


async def test_usage_marks_estimated_counts() -> None:
    shown = Shown()
    renderer = shown.renderer
    await shown.feed(
        ev.TurnStarted(prompt="a"),
        ev.Usage(
            prompt_tokens=1200,
            completion_tokens=30,
            total_prompt_tokens=1200,
            total_completion_tokens=30,
        ),
        ev.TurnEnded(),
    )
    assert renderer.usage_line() == (
        "tokens: 1,200 in · 30 out this turn (session: 1,200 in · 30 out)"
    )
    await shown.feed(
        ev.TurnStarted(prompt="b"),
        ev.Usage(
            prompt_tokens=1300,
            completion_tokens=40,
            total_prompt_tokens=2500,
            total_completion_tokens=70,
            estimated=True,
        ),
        ev.TurnEnded(),
    )
    estimated = (
        "tokens: ~1,300 in · ~40 out this turn (session: ~2,500 in · ~70 out)"
        " · estimated: the server reported no token usage"
    )
    assert renderer.usage_line() == estimated
    # A later reported turn is exact, but the session's totals still hold the estimate.
    await shown.feed(
        ev.TurnStarted(prompt="c"),
        ev.Usage(
            prompt_tokens=100,
            completion_tokens=5,
            total_prompt_tokens=2600,
            total_completion_tokens=75,
        ),
        ev.TurnEnded(),
    )
    assert renderer.usage_line() == (
        "tokens: 100 in · 5 out this turn (session: ~2,600 in · ~75 out)"
        " · estimated: the server reported no token usage"
    )
    renderer.show_usage = True
    await shown.feed(ev.TurnStarted(prompt="d"), ev.TurnEnded())
    assert shown.screen()[-1].startswith("tokens: 0 in · 0 out this turn (session: ~2,600 in")
