"""The control API: every running engine serves HTTP + JSON on a Unix socket (server.py);
`riskman status` and the attached terminal talk to it (client.py). One engine per database
(lockfile.py); systemd's readiness and watchdog messages (sdnotify.py)."""
