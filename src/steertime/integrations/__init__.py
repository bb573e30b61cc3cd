"""steertime inside other people's loops (Donkeycar). Each module imports its host lazily or
not at all: `import steertime` never needs one."""
