"""mcugen: compile an int8 MobileNet into static C99 for microcontrollers."""

__version__ = "0.1.0"
