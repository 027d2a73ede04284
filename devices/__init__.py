"""storegw device drivers, one subpackage per family."""
