"""The anycast node and the appliance around it."""
