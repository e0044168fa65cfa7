"""The course's grader: points per question from pytest, and a verdict no submission can forge.

Each graded test is a probe, which runs the student's code and returns plain data, and a check,
which compares that data with values it computes itself (``grader.probes``). ``grader.plugin`` is the
pytest plugin (``pytest.ini`` loads it) and ``grader.report`` the points and Gradescope's results.json.
"""
