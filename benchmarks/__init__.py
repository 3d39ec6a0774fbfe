"""riskman's benchmarks: event-to-enforcement latency against the floor, quote throughput,
account scale and start-up time, each measured against the simulator on loopback.

Run them with ``python3 dev.py bench [NAME]`` (``python -m benchmarks --help``); what they
measure and the latest results are in ``benchmarks/README.md``. They are not part of the test
suite: a run takes minutes and its numbers depend on the machine.

Three kinds of process take part, so no measurement shares an event loop (or a GIL) with the
thing that measures it:

- the *orchestrator* (``python -m benchmarks``) starts the others, tells them what to do over a
  small control connection, and prints the tables; it sleeps while a measurement runs;
- the *simulator* (:mod:`benchmarks.simproc`): the embedded ProjectX simulator in its own
  process; it writes the events and timestamps both ends of every measured interval on its own
  monotonic clock (the event leaving, the close call arriving);
- the *system under test* (:mod:`benchmarks.sut`): riskman headless, riskman inside the Textual
  app (headless driver), or the minimal "floor" client.
"""
