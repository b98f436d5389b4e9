module go119

go 1.19
