"""Quality filtering: the filter chain over datatrove's rules and the fast engine, words, n-grams, language ID."""
