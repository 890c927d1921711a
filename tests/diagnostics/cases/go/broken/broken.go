package broken

func Count() int {
	unused := 3
	return "three"
}
