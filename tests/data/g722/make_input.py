"""Writes input.s16 (0.3 s of 16 kHz s16le: sweep, tones, square wave, noise) and random.g722 (800 random octets)."""
import math
import random
import struct

rate = 16000
s = []
n = int(0.3 * rate)
for i in range(n):
    t = i / rate
    if i < 1600:      # quiet start, then a loud log sweep 50 Hz -> 7.8 kHz (0.1 s)
        f0, f1, T = 50.0, 7800.0, 0.1
        k = math.log(f1 / f0)
        ph = 2 * math.pi * f0 * T / k * (math.exp(t / T * k) - 1)
        v = 30000 * math.sin(ph) * min(1.0, i / 200)
    elif i < 3200:    # two tones (440 Hz + 5 kHz), then a full-scale square wave (saturation paths)
        v = 9000 * math.sin(2 * math.pi * 440 * t) + 7000 * math.sin(2 * math.pi * 5000 * t)
        if i >= 2600:
            v = 32767 if (i // 20) % 2 else -32768
    else:             # white noise, then silence
        v = random.Random(i).randint(-20000, 20000) if i < 4200 else 0
    s.append(max(-32768, min(32767, round(v))))
open("input.s16", "wb").write(struct.pack("<%dh" % len(s), *s))
open("random.g722", "wb").write(bytes(random.Random(722).randrange(256) for _ in range(800)))
