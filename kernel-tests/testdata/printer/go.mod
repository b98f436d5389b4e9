module printer

go 1.22
