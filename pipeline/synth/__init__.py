"""The built-in data set's songs: seeded, deterministic multitrack music in MUSDB18's four stems.

A song is first *scored* (`arrangement`: tempo, key, chord progression, where each stem is silent;
each part then scores its own notes and hits) and then *rendered* part by part (`drums`, `bass`,
`vocals`, `other`) with vectorised numpy/scipy code (`dsp`); `song` adds the room, levels the
stems and mixes them, and `titles` makes up the songs' "Artist - Title" names. A Python loop runs
over notes and hits (to fill envelopes and pitch curves) and over blocks of 65536 samples, never
over samples. Buffers are float32 and parts are rendered one after the other, so a 10-minute song
fits in about 2 GB. Key, mode, progression, tempo (80-160 bpm), swing, patterns, timbres, pans,
levels and the room vary with the seed.

Pure numpy/scipy and no file I/O (`prepare` writes the songs); imports nothing from the rest of
`pipeline` except `pipeline.names`.
"""
from __future__ import annotations

from pipeline.names import TARGETS as STEMS  # the stems of a song, in this order
from pipeline.synth.song import LEVEL_RANGES_DB, render_song
from pipeline.synth.titles import song_names

__all__ = ["LEVEL_RANGES_DB", "STEMS", "render_song", "song_names"]
