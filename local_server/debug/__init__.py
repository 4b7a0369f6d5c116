"""The debug console: ``GET /debug`` (one page), ``/debug/stream`` (server-sent events) and the Event Creator.

Modules: ``access`` (who may see what), ``views`` (the page, the stream, the Event Creator, ``mount`` for the
local server), ``emulator`` (the emulator's console).

Like Pusher's dashboard Debug Console: live counters, occupied channels with their subscribers and presence
members, and a log of what the engine does, fed by the engine's ``DebugTap`` (never by polling from the
page). Each open page holds one bounded ``TapFeed``: a slow tab loses events (and is told how many),
it never slows the server.

Access: on a loopback listener, anyone who can reach the port can already do everything the console
shows, so it is open (to requests whose ``Host`` is a loopback name, which keeps DNS-rebinding pages out).
On any other listener every console request needs the app's secret or the ``admin_token``: as a bearer
token, or once through the login form, which sets an HMAC-signed session cookie. A secret grants that
app only; the admin token grants every app. The page itself holds no secret: the Event Creator's request
is signed on the server and handed to the same REST handler an SDK's request reaches.
"""
