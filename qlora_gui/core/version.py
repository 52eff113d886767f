"""The app's version, in the core so that core modules (the Hub's model card) can say it."""

VERSION = "0.1.0"
