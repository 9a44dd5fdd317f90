"""Front ends: read a model file and build mcugen's IR (see mcugen.ir) from it."""
