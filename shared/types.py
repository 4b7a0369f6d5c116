"""Identifier types shared by every layer, so a socket id is never mistaken for a channel name."""

from __future__ import annotations

from typing import NewType

AppId = NewType("AppId", str)
SocketId = NewType("SocketId", str)
ChannelName = NewType("ChannelName", str)
UserId = NewType("UserId", str)
