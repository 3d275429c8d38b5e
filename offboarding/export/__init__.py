"""Stage: a case up to a verified bundle: freeze, inventory, export one consistent snapshot,
package the signed ZIP, verify it against the inventory (`export.py`)."""
