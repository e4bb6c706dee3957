"""Commands beyond Lightning's fit / validate / test / predict."""
