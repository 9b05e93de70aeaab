"""Reports of a run: the console table, JSON and JUnit (``results``), the HTML report (``html``, with the
call's audio and the Korean glyphs it uses embedded, ``fonts``), and why a check failed (``printout``).

May import: ``harness.replay`` (its results), ``harness.judge``; not the fakes, load, fuzz or authoring.
"""
