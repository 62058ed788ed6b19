module github.com/vipcast/vipcast/e2e

go 1.26
