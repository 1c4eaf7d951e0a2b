namespace LlavaMech.Processing;

/// <summary>Loads the tokenizer of a model folder.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// <c>tokenizer.json</c> (Hugging Face tokenizers, exact ids) when present; otherwise <c>tokenizer.model</c>
    /// (SentencePiece). Throws <see cref="ProcessingException"/> naming the folder when neither exists, or naming
    /// the file when it cannot be read.
    /// </summary>
    public static ITextTokenizer Load(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        if (!Directory.Exists(modelDir))
            throw new ProcessingException($"model folder {modelDir} does not exist");
        var json = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(json)) return HuggingFaceTokenizer.Load(json);
        var sp = Path.Combine(modelDir, "tokenizer.model");
        if (File.Exists(sp)) return SentencePieceTextTokenizer.Load(sp);
        throw new ProcessingException(
            $"no tokenizer in {modelDir}: expected tokenizer.json (Hugging Face tokenizers) or tokenizer.model (SentencePiece)");
    }
}
