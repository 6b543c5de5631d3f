"""Stage 1: read Lambda failure artifacts (files now, AWS accounts later) into rows for the store."""
