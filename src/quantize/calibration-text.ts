// The built-in calibration text of `quantize --method awq` when --calib-data is not given: original
// paragraphs written for this project (no third-party text), plain English in several registers
// (short children's stories, explanations, instructions, dialogue, a little code and numbers), so
// that the activations it produces resemble those of everyday prompts. Pass --calib-data with text
// from the model's own domain for better scales.
export const BUILTIN_CALIBRATION_TEXT = `Once upon a time, there was a little girl named Mia who lived in a small house near the woods. Every morning she went outside to look at the birds. One day she saw a tiny blue bird sitting on the fence. The bird looked sad because it could not find its way home. Mia said, "Do not worry, little bird. I will help you." She walked with the bird along the path until they found a tall tree with a nest in it. The bird sang a happy song and flew up to its family. Mia smiled and went home to tell her mom about her new friend.

Tom had a red ball that he loved very much. He played with it in the park every day after lunch. One afternoon the ball rolled into the pond. Tom was scared of the water, so he asked his big brother Sam for help. Sam found a long stick and pulled the ball back to the grass. Tom hugged his brother and said thank you. From that day on, they played with the ball together, and Tom learned that it is good to ask for help when something is hard.

A small dog named Max wanted to be brave. At night he heard strange sounds outside the window, and he hid under the bed. His friend, an old cat, told him that the sounds were only the wind in the trees. The next night Max listened carefully. He heard the wind, the rain and a frog singing near the garden. He was not afraid anymore, and he slept well until the sun came up.

The water cycle describes how water moves between the ground, the oceans and the air. When the sun warms a lake or the sea, some of the water turns into vapor and rises. High in the sky the vapor cools and forms clouds made of tiny droplets. When the droplets grow heavy enough, they fall as rain or snow. The water then flows into rivers, soaks into the soil, or returns to the sea, and the cycle begins again.

To make a simple vegetable soup, first wash and chop two carrots, one onion, a potato and a handful of green beans. Warm a spoon of oil in a large pot and cook the onion for a few minutes until it is soft. Add the other vegetables, pour in one liter of water or stock, and add a pinch of salt. Let the soup simmer for about twenty minutes, stirring now and then. Taste it before serving and add pepper or herbs if you like.

A computer program is a list of instructions that a machine follows step by step. For example, a short function can add up the numbers in a list: it starts with a total of zero, looks at each number in turn, and adds it to the total. When the list is finished, the function returns the result. Programmers test such functions with small inputs, such as the list 3, 5 and 7, whose sum is 15, before they trust them with larger data.

"Where are you going?" asked Lily. "To the market," said her grandfather. "We need bread, apples and some cheese for dinner." Lily put on her coat and took his hand. On the way they passed the bakery, the post office and the old clock tower, which rang five times. At the market a kind woman gave Lily a shiny green apple to taste. It was sweet and crunchy, and Lily decided it was the best apple she had ever eaten.

The history of a town can often be read in its buildings. The oldest houses near the river were built of stone, because stone was cheap and close at hand. Later, when the railway arrived, brick factories opened and rows of brick houses appeared along new streets. In the last century, wide roads and parking lots changed the center again. Walking slowly through such a town is like turning the pages of a book about the people who lived there.

Good sleep helps the body and the mind. Most adults need between seven and nine hours each night, while children need more. Going to bed at the same time every day, keeping the bedroom dark and quiet, and avoiding bright screens before sleep all make it easier to rest. A short walk in daylight during the morning can also help the body keep a steady rhythm.

Once there was a bear who loved honey more than anything. One summer the bees moved their hive to the top of a very tall tree. The bear tried to climb it, but the branches were thin and he kept slipping. Then he had an idea. He asked the bees what they needed, and they said they needed flowers. The bear planted a big field of flowers near the tree. The bees were so happy that they shared their honey with him every day, and the bear learned that kindness works better than force.

In mathematics, a prime number is a whole number greater than one that can only be divided evenly by one and by itself. The first few primes are 2, 3, 5, 7, 11 and 13. Every whole number greater than one can be written as a product of primes in exactly one way, apart from the order of the factors. For instance, 84 equals 2 times 2 times 3 times 7. This simple fact is one of the foundations of number theory.

When you write an email to someone you do not know, begin with a short greeting and say who you are. Explain in one or two sentences why you are writing, and be clear about what you would like the reader to do. Keep the message polite and brief, check the spelling before you send it, and thank the reader for their time. A clear subject line helps the message get read.

The little boat sailed across the bay while the sun went down. The sky turned orange, then pink, then deep purple. The fisherman counted the fish in his basket and hummed a song his father had taught him. When the first stars appeared, he could see the light of the harbor and the shapes of the houses on the hill. He knew his family was waiting for him with a warm supper, and he rowed a little faster.
`;
