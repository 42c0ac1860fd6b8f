"""Stage ``report``: the static HTML page over evaluate's results and every clip (``html``)."""
