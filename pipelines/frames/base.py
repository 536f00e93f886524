"""The two kinds of frame (see `pipelines.processor`)."""

from __future__ import annotations


class Frame:
    """Base of every frame."""

    __slots__ = ()


class SystemFrame(Frame):
    __slots__ = ()


class DataFrame(Frame):
    __slots__ = ()
