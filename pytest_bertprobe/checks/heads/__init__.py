"""The heads' checks: each head replayed on the input its architecture promises (`replay`, with the promise table in
`promises`), and a classifier's label map (`labels`)."""
