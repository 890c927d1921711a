package main

import "fmt"

func main() {
	name := "demo"
	fmt.Printf("%d\n", name)
}
