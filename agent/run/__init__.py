"""The run machinery: the configuration and command line, building a run, the trainer,
checkpoints, logging, interrupts and scoring."""
