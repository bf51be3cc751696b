"""Sensor-Digits: a worked example of a MOSEL model pack of your own (see README.md).

The pack is `sensor_digits.pack:SensorDigitsPack`, installed under the `mosel.models`
entry point "sensor-digits"."""

__version__ = "0.1.0"
