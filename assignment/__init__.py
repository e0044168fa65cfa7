"""Reference solutions of the course "Recurrent Neural Networks and Graph Neural Networks".

The student package ``assignment`` is generated from this one by ``python -m tools.make_assignment``.
"""
