"""`hpipe report`: one self-contained HTML page of the runs, experiments and pipeline (data.py
gathers it; page.py writes page.html's template with the data, page.css and page.js inlined).
The page needs no network: its charts are SVG drawn by its own script."""
