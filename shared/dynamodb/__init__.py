"""What every DynamoDB driver shares: the table (``table``) and the item wire format (``items``)."""
