"""What a month of sockless costs: the price table, the meter, the monthly model and the report (docs/cost.md)."""
