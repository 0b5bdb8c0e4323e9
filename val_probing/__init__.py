"""VAL probing: where in the context does a long-context LLM stop reading?"""

__version__ = "0.1.0"
