"""Self-contained HTML reports: one file that opens offline, with charts as inline SVG."""
