"""Attendance stream: session marks in, absence thresholds (reg 13 returns, deletion ground 9(1)(i)) out."""
