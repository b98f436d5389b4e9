module generic

go 1.22
