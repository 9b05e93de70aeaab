"""The judge, sans-I/O: a played call as a timeline, what the caller heard and which reply answered which
utterance, the checks (``checks.CHECKS``), the latency figures, and the handler's log read for errors.

May import: ``harness.fakes`` (their journals and tones), ``harness.fixture``, fakertzr's journal, callaudio.
"""
