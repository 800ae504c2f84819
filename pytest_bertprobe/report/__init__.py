"""Stage 7, the report: each test's results as properties, folded per checkpoint on the controller (`properties`);
the terminal section (`terminal`); JSON and Markdown files (`files`); the HTML page (`html`) and its plots (`plots`);
the output paths tried before anything loads (`paths`)."""
