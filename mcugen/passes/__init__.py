"""Graph-to-graph passes. Each is a pure function ``Graph -> Graph`` that returns a new Graph
(ops rebuilt with ``dataclasses.replace``) and leaves its argument untouched."""
