"""Reports: sample tables and the Markdown/HTML documents built from tracked outputs."""
