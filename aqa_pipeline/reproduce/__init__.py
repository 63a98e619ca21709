"""``aqa-reproduce``: one dataset folder in, the seed papers' table out (ours honest, ours paper-protocol, theirs).

One concept per module: ``papers`` (the published numbers, as data), ``folder`` (the user's copy against the
manifest), ``plan`` (which features and heads each dataset's papers used), ``stages`` (running them, resumably),
``table`` (TABLE.md and table.csv).
"""
