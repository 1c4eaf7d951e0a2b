using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>forward</c>: one pass of a checkpoint on one prompt (and image); the next-token distribution.</summary>
public sealed class ForwardCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "Hugging Face checkpoint folder (LlavaForConditionalGeneration or LlamaForCausalLM)", Required: true),
        new("image", "FILE", "PNG, JPEG or WebP image (omit for a text-only prompt)"),
        new("prompt", "TEXT", "prompt; a vision prompt contains one <image>, e.g. \"USER: <image>\\nWhat is the color of the dog?\\nASSISTANT:\"", Required: true),
        new("top", "K", "how many next-token candidates to show", "5") { Range = CommandLine.NumericRange.Int(1, 1 << 20) },
        new("json", null, "print one JSON object instead of a table"),
        .. DeviceOptions.Specs,
    ];

    public static string Description { get; } = """
        Runs one forward pass and reports the model's next token at the last position: the input
        ids (with <image> expanded to the image sequence length), the argmax target and the most
        probable next tokens. This is the pass every analysis starts from.

        JSON fields: input_ids, seq_len, num_image_tokens, image_positions, target_id, target_token,
        top [{id, token, prob}], model, device, dtype. A non-finite number (NaN, infinity: an fp16
        overflow, a corrupt weight) is written as null, so the output stays valid JSON.
        """;

    public static string Examples { get; } = """
          ./llavamech forward --model datasets/models/tiny-llava --image datasets/images/red_circle.png \
              --prompt $'USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is'
          ./llavamech forward --model ckpt/llava-1.5-7b-hf --device cuda --image dog.jpg --prompt "..." --json
        """;

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        int k = cl.GetInt("top");
        using var model = LoadedModel.Load(cl.Require("model"), options);
        using var scope = NewDisposeScope();
        var input = model.Prepare(cl.Require("prompt"), cl.Get("image"));
        var result = ForwardPrediction.Run(model, input, k);
        var top = result.Top;
        if (cl.Flag("json"))
        {
            Console.WriteLine(Json.Serialize(result));
            return 0;
        }
        Console.WriteLine($"model      {model.Directory} ({model.Config.Kind}, {model.Layers} layers, {model.Device}, {model.DType})");
        Console.WriteLine($"tokens     {input.SeqLen} ({input.ImagePositions.Length} image tokens)");
        Console.WriteLine($"target     {top[0].Id} '{top[0].Token}'");
        Console.WriteLine();
        Console.WriteLine("  rank      id  token                 prob");
        for (int i = 0; i < top.Length; i++)
            Console.WriteLine($"  {i + 1,4}  {top[i].Id,6}  {Trunc(top[i].Token, 20),-20}  {top[i].Prob,8:0.000000}");
        return 0;
    }

    private static string Trunc(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
