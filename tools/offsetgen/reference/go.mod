module reference

go 1.21
