"""Where a vector goes in a prompt.

A prompt holds one ``EMB_TOKEN`` per vector; the collator (batch.py) splits the templated chat at each one
and the ELM (elm.py) fills the gap with the adapter's soft tokens for that vector. Kept apart from the
torch code so that prompt-writing code (the task catalog) can import it without loading torch.
"""

EMB_TOKEN = "<emb>"
