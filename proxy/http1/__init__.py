"""One HTTP/1.1 client core; the streaming upstream pool and the pipelined shadow channel use it."""
