"""The data half of the flow: download and generate raw data, prepare it into Parquet."""
