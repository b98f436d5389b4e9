module go121

go 1.21
