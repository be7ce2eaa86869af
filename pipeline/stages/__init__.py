"""The stages and tools of the sepcost command, one module each: each reads as its recipe."""
